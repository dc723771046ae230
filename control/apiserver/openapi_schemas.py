"""OpenAPI schemas of the served kinds (written by tests/control/openapi_schemas_gen.py; do not edit)."""

import json
from typing import Any

_DOCUMENT = r"""
{
 "kinds": {
  "/v1/Binding": "V1Binding",
  "/v1/ConfigMap": "V1ConfigMap",
  "/v1/Endpoints": "V1Endpoints",
  "/v1/Event": "CoreV1Event",
  "/v1/Namespace": "V1Namespace",
  "/v1/Node": "V1Node",
  "/v1/Pod": "V1Pod",
  "/v1/Secret": "V1Secret",
  "/v1/Service": "V1Service",
  "/v1/ServiceAccount": "V1ServiceAccount",
  "apps/v1/Deployment": "V1Deployment",
  "apps/v1/ReplicaSet": "V1ReplicaSet",
  "authentication.k8s.io/v1/TokenRequest": "AuthenticationV1TokenRequest",
  "authentication.k8s.io/v1/TokenReview": "V1TokenReview",
  "authorization.k8s.io/v1/LocalSubjectAccessReview": "V1LocalSubjectAccessReview",
  "authorization.k8s.io/v1/SelfSubjectAccessReview": "V1SelfSubjectAccessReview",
  "authorization.k8s.io/v1/SelfSubjectRulesReview": "V1SelfSubjectRulesReview",
  "authorization.k8s.io/v1/SubjectAccessReview": "V1SubjectAccessReview",
  "autoscaling/v1/Scale": "V1Scale",
  "autoscaling/v2/HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
  "certificates.k8s.io/v1/CertificateSigningRequest": "V1CertificateSigningRequest",
  "coordination.k8s.io/v1/Lease": "V1Lease",
  "discovery.k8s.io/v1/EndpointSlice": "V1EndpointSlice",
  "policy/v1/Eviction": "V1Eviction",
  "policy/v1/PodDisruptionBudget": "V1PodDisruptionBudget",
  "rbac.authorization.k8s.io/v1/ClusterRole": "V1ClusterRole",
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "V1ClusterRoleBinding",
  "rbac.authorization.k8s.io/v1/Role": "V1Role",
  "rbac.authorization.k8s.io/v1/RoleBinding": "V1RoleBinding"
 },
 "schemas": {
  "AuthenticationV1TokenRequest": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1TokenRequestSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1TokenRequestStatus"
    }
   },
   "type": "object"
  },
  "CoreV1EndpointPort": {
   "properties": {
    "appProtocol": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "port": {
     "format": "int64",
     "type": "integer"
    },
    "protocol": {
     "type": "string"
    }
   },
   "required": [
    "port"
   ],
   "type": "object"
  },
  "CoreV1Event": {
   "properties": {
    "action": {
     "type": "string"
    },
    "apiVersion": {
     "type": "string"
    },
    "count": {
     "format": "int64",
     "type": "integer"
    },
    "eventTime": {
     "format": "date-time",
     "type": "string"
    },
    "firstTimestamp": {
     "format": "date-time",
     "type": "string"
    },
    "involvedObject": {
     "$ref": "#/components/schemas/V1ObjectReference"
    },
    "kind": {
     "type": "string"
    },
    "lastTimestamp": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "reason": {
     "type": "string"
    },
    "related": {
     "$ref": "#/components/schemas/V1ObjectReference"
    },
    "reportingComponent": {
     "type": "string"
    },
    "reportingInstance": {
     "type": "string"
    },
    "series": {
     "$ref": "#/components/schemas/CoreV1EventSeries"
    },
    "source": {
     "$ref": "#/components/schemas/V1EventSource"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "involvedObject",
    "metadata"
   ],
   "type": "object"
  },
  "CoreV1EventSeries": {
   "properties": {
    "count": {
     "format": "int64",
     "type": "integer"
    },
    "lastObservedTime": {
     "format": "date-time",
     "type": "string"
    }
   },
   "type": "object"
  },
  "CoreV1ResourceClaim": {
   "properties": {
    "name": {
     "type": "string"
    },
    "request": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "DiscoveryV1EndpointPort": {
   "properties": {
    "appProtocol": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "port": {
     "format": "int64",
     "type": "integer"
    },
    "protocol": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "RbacV1Subject": {
   "properties": {
    "apiGroup": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "namespace": {
     "type": "string"
    }
   },
   "required": [
    "kind",
    "name"
   ],
   "type": "object"
  },
  "V1AWSElasticBlockStoreVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "partition": {
     "format": "int64",
     "type": "integer"
    },
    "readOnly": {
     "type": "boolean"
    },
    "volumeID": {
     "type": "string"
    }
   },
   "required": [
    "volumeID"
   ],
   "type": "object"
  },
  "V1Affinity": {
   "properties": {
    "nodeAffinity": {
     "$ref": "#/components/schemas/V1NodeAffinity"
    },
    "podAffinity": {
     "$ref": "#/components/schemas/V1PodAffinity"
    },
    "podAntiAffinity": {
     "$ref": "#/components/schemas/V1PodAntiAffinity"
    }
   },
   "type": "object"
  },
  "V1AggregationRule": {
   "properties": {
    "clusterRoleSelectors": {
     "items": {
      "$ref": "#/components/schemas/V1LabelSelector"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1AppArmorProfile": {
   "properties": {
    "localhostProfile": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "type"
   ],
   "type": "object"
  },
  "V1AttachedVolume": {
   "properties": {
    "devicePath": {
     "type": "string"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "devicePath",
    "name"
   ],
   "type": "object"
  },
  "V1AzureDiskVolumeSource": {
   "properties": {
    "cachingMode": {
     "type": "string"
    },
    "diskName": {
     "type": "string"
    },
    "diskURI": {
     "type": "string"
    },
    "fsType": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    }
   },
   "required": [
    "diskName",
    "diskURI"
   ],
   "type": "object"
  },
  "V1AzureFileVolumeSource": {
   "properties": {
    "readOnly": {
     "type": "boolean"
    },
    "secretName": {
     "type": "string"
    },
    "shareName": {
     "type": "string"
    }
   },
   "required": [
    "secretName",
    "shareName"
   ],
   "type": "object"
  },
  "V1Binding": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "target": {
     "$ref": "#/components/schemas/V1ObjectReference"
    }
   },
   "required": [
    "target"
   ],
   "type": "object"
  },
  "V1BoundObjectReference": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "uid": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1CSIVolumeSource": {
   "properties": {
    "driver": {
     "type": "string"
    },
    "fsType": {
     "type": "string"
    },
    "nodePublishSecretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    },
    "readOnly": {
     "type": "boolean"
    },
    "volumeAttributes": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    }
   },
   "required": [
    "driver"
   ],
   "type": "object"
  },
  "V1Capabilities": {
   "properties": {
    "add": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "drop": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1CephFSVolumeSource": {
   "properties": {
    "monitors": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "path": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "secretFile": {
     "type": "string"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    },
    "user": {
     "type": "string"
    }
   },
   "required": [
    "monitors"
   ],
   "type": "object"
  },
  "V1CertificateSigningRequest": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1CertificateSigningRequestSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1CertificateSigningRequestStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1CertificateSigningRequestCondition": {
   "properties": {
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "lastUpdateTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "status",
    "type"
   ],
   "type": "object"
  },
  "V1CertificateSigningRequestSpec": {
   "properties": {
    "expirationSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "extra": {
     "additionalProperties": {
      "items": {
       "type": "string"
      },
      "type": "array"
     },
     "type": "object"
    },
    "groups": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "request": {
     "format": "byte",
     "type": "string"
    },
    "signerName": {
     "type": "string"
    },
    "uid": {
     "type": "string"
    },
    "usages": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "username": {
     "type": "string"
    }
   },
   "required": [
    "request",
    "signerName"
   ],
   "type": "object"
  },
  "V1CertificateSigningRequestStatus": {
   "properties": {
    "certificate": {
     "format": "byte",
     "type": "string"
    },
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1CertificateSigningRequestCondition"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1CinderVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    },
    "volumeID": {
     "type": "string"
    }
   },
   "required": [
    "volumeID"
   ],
   "type": "object"
  },
  "V1ClientIPConfig": {
   "properties": {
    "timeoutSeconds": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1ClusterRole": {
   "properties": {
    "aggregationRule": {
     "$ref": "#/components/schemas/V1AggregationRule"
    },
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "rules": {
     "items": {
      "$ref": "#/components/schemas/V1PolicyRule"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1ClusterRoleBinding": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "roleRef": {
     "$ref": "#/components/schemas/V1RoleRef"
    },
    "subjects": {
     "items": {
      "$ref": "#/components/schemas/RbacV1Subject"
     },
     "type": "array"
    }
   },
   "required": [
    "roleRef"
   ],
   "type": "object"
  },
  "V1ClusterTrustBundleProjection": {
   "properties": {
    "labelSelector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    },
    "path": {
     "type": "string"
    },
    "signerName": {
     "type": "string"
    },
    "user": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "path"
   ],
   "type": "object"
  },
  "V1Condition": {
   "properties": {
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "lastTransitionTime",
    "message",
    "reason",
    "status",
    "type"
   ],
   "type": "object"
  },
  "V1ConfigMap": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "binaryData": {
     "additionalProperties": {
      "format": "byte",
      "type": "string"
     },
     "type": "object"
    },
    "data": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "immutable": {
     "type": "boolean"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    }
   },
   "type": "object"
  },
  "V1ConfigMapEnvSource": {
   "properties": {
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1ConfigMapKeySelector": {
   "properties": {
    "key": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    }
   },
   "required": [
    "key"
   ],
   "type": "object"
  },
  "V1ConfigMapNodeConfigSource": {
   "properties": {
    "kubeletConfigKey": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "namespace": {
     "type": "string"
    },
    "resourceVersion": {
     "type": "string"
    },
    "uid": {
     "type": "string"
    }
   },
   "required": [
    "kubeletConfigKey",
    "name",
    "namespace"
   ],
   "type": "object"
  },
  "V1ConfigMapProjection": {
   "properties": {
    "items": {
     "items": {
      "$ref": "#/components/schemas/V1KeyToPath"
     },
     "type": "array"
    },
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1ConfigMapVolumeSource": {
   "properties": {
    "defaultMode": {
     "format": "int64",
     "type": "integer"
    },
    "defaultUser": {
     "format": "int64",
     "type": "integer"
    },
    "items": {
     "items": {
      "$ref": "#/components/schemas/V1KeyToPath"
     },
     "type": "array"
    },
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1Container": {
   "properties": {
    "args": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "command": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "env": {
     "items": {
      "$ref": "#/components/schemas/V1EnvVar"
     },
     "type": "array"
    },
    "envFrom": {
     "items": {
      "$ref": "#/components/schemas/V1EnvFromSource"
     },
     "type": "array"
    },
    "image": {
     "type": "string"
    },
    "imagePullPolicy": {
     "type": "string"
    },
    "lifecycle": {
     "$ref": "#/components/schemas/V1Lifecycle"
    },
    "livenessProbe": {
     "$ref": "#/components/schemas/V1Probe"
    },
    "name": {
     "type": "string"
    },
    "ports": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerPort"
     },
     "type": "array"
    },
    "readinessProbe": {
     "$ref": "#/components/schemas/V1Probe"
    },
    "resizePolicy": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerResizePolicy"
     },
     "type": "array"
    },
    "resources": {
     "$ref": "#/components/schemas/V1ResourceRequirements"
    },
    "restartPolicy": {
     "type": "string"
    },
    "restartPolicyRules": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerRestartRule"
     },
     "type": "array"
    },
    "securityContext": {
     "$ref": "#/components/schemas/V1SecurityContext"
    },
    "startupProbe": {
     "$ref": "#/components/schemas/V1Probe"
    },
    "stdin": {
     "type": "boolean"
    },
    "stdinOnce": {
     "type": "boolean"
    },
    "terminationMessagePath": {
     "type": "string"
    },
    "terminationMessagePolicy": {
     "type": "string"
    },
    "tty": {
     "type": "boolean"
    },
    "volumeDevices": {
     "items": {
      "$ref": "#/components/schemas/V1VolumeDevice"
     },
     "type": "array"
    },
    "volumeMounts": {
     "items": {
      "$ref": "#/components/schemas/V1VolumeMount"
     },
     "type": "array"
    },
    "workingDir": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1ContainerExtendedResourceRequest": {
   "properties": {
    "containerName": {
     "type": "string"
    },
    "requestName": {
     "type": "string"
    },
    "resourceName": {
     "type": "string"
    }
   },
   "required": [
    "containerName",
    "requestName",
    "resourceName"
   ],
   "type": "object"
  },
  "V1ContainerImage": {
   "properties": {
    "names": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "sizeBytes": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1ContainerPort": {
   "properties": {
    "containerPort": {
     "format": "int64",
     "type": "integer"
    },
    "hostIP": {
     "type": "string"
    },
    "hostPort": {
     "format": "int64",
     "type": "integer"
    },
    "name": {
     "type": "string"
    },
    "protocol": {
     "type": "string"
    }
   },
   "required": [
    "containerPort"
   ],
   "type": "object"
  },
  "V1ContainerResizePolicy": {
   "properties": {
    "resourceName": {
     "type": "string"
    },
    "restartPolicy": {
     "type": "string"
    }
   },
   "required": [
    "resourceName",
    "restartPolicy"
   ],
   "type": "object"
  },
  "V1ContainerRestartRule": {
   "properties": {
    "action": {
     "type": "string"
    },
    "exitCodes": {
     "$ref": "#/components/schemas/V1ContainerRestartRuleOnExitCodes"
    }
   },
   "required": [
    "action"
   ],
   "type": "object"
  },
  "V1ContainerRestartRuleOnExitCodes": {
   "properties": {
    "operator": {
     "type": "string"
    },
    "values": {
     "items": {
      "format": "int64",
      "type": "integer"
     },
     "type": "array"
    }
   },
   "required": [
    "operator"
   ],
   "type": "object"
  },
  "V1ContainerState": {
   "properties": {
    "running": {
     "$ref": "#/components/schemas/V1ContainerStateRunning"
    },
    "terminated": {
     "$ref": "#/components/schemas/V1ContainerStateTerminated"
    },
    "waiting": {
     "$ref": "#/components/schemas/V1ContainerStateWaiting"
    }
   },
   "type": "object"
  },
  "V1ContainerStateRunning": {
   "properties": {
    "startedAt": {
     "format": "date-time",
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ContainerStateTerminated": {
   "properties": {
    "containerID": {
     "type": "string"
    },
    "exitCode": {
     "format": "int64",
     "type": "integer"
    },
    "finishedAt": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "signal": {
     "format": "int64",
     "type": "integer"
    },
    "startedAt": {
     "format": "date-time",
     "type": "string"
    }
   },
   "required": [
    "exitCode"
   ],
   "type": "object"
  },
  "V1ContainerStateWaiting": {
   "properties": {
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ContainerStatus": {
   "properties": {
    "allocatedResources": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "allocatedResourcesStatus": {
     "items": {
      "$ref": "#/components/schemas/V1ResourceStatus"
     },
     "type": "array"
    },
    "containerID": {
     "type": "string"
    },
    "image": {
     "type": "string"
    },
    "imageID": {
     "type": "string"
    },
    "lastState": {
     "$ref": "#/components/schemas/V1ContainerState"
    },
    "name": {
     "type": "string"
    },
    "ready": {
     "type": "boolean"
    },
    "resources": {
     "$ref": "#/components/schemas/V1ResourceRequirements"
    },
    "restartCount": {
     "format": "int64",
     "type": "integer"
    },
    "started": {
     "type": "boolean"
    },
    "state": {
     "$ref": "#/components/schemas/V1ContainerState"
    },
    "stopSignal": {
     "type": "string"
    },
    "user": {
     "$ref": "#/components/schemas/V1ContainerUser"
    },
    "volumeMounts": {
     "items": {
      "$ref": "#/components/schemas/V1VolumeMountStatus"
     },
     "type": "array"
    }
   },
   "required": [
    "image",
    "imageID",
    "name",
    "ready",
    "restartCount"
   ],
   "type": "object"
  },
  "V1ContainerUser": {
   "properties": {
    "linux": {
     "$ref": "#/components/schemas/V1LinuxContainerUser"
    }
   },
   "type": "object"
  },
  "V1DaemonEndpoint": {
   "properties": {
    "Port": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "Port"
   ],
   "type": "object"
  },
  "V1DeleteOptions": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "dryRun": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "gracePeriodSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "ignoreStoreReadErrorWithClusterBreakingPotential": {
     "type": "boolean"
    },
    "kind": {
     "type": "string"
    },
    "orphanDependents": {
     "type": "boolean"
    },
    "preconditions": {
     "$ref": "#/components/schemas/V1Preconditions"
    },
    "propagationPolicy": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Deployment": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1DeploymentSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1DeploymentStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1DeploymentCondition": {
   "properties": {
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "lastUpdateTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1DeploymentSpec": {
   "properties": {
    "minReadySeconds": {
     "format": "int64",
     "type": "integer"
    },
    "paused": {
     "type": "boolean"
    },
    "progressDeadlineSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "replicas": {
     "format": "int64",
     "type": "integer"
    },
    "revisionHistoryLimit": {
     "format": "int64",
     "type": "integer"
    },
    "selector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "strategy": {
     "$ref": "#/components/schemas/V1DeploymentStrategy"
    },
    "template": {
     "$ref": "#/components/schemas/V1PodTemplateSpec"
    }
   },
   "required": [
    "selector",
    "template"
   ],
   "type": "object"
  },
  "V1DeploymentStatus": {
   "properties": {
    "availableReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "collisionCount": {
     "format": "int64",
     "type": "integer"
    },
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1DeploymentCondition"
     },
     "type": "array"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    },
    "readyReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "replicas": {
     "format": "int64",
     "type": "integer"
    },
    "terminatingReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "unavailableReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "updatedReplicas": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1DeploymentStrategy": {
   "properties": {
    "rollingUpdate": {
     "$ref": "#/components/schemas/V1RollingUpdateDeployment"
    },
    "type": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1DownwardAPIProjection": {
   "properties": {
    "items": {
     "items": {
      "$ref": "#/components/schemas/V1DownwardAPIVolumeFile"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1DownwardAPIVolumeFile": {
   "properties": {
    "fieldRef": {
     "$ref": "#/components/schemas/V1ObjectFieldSelector"
    },
    "mode": {
     "format": "int64",
     "type": "integer"
    },
    "path": {
     "type": "string"
    },
    "resourceFieldRef": {
     "$ref": "#/components/schemas/V1ResourceFieldSelector"
    },
    "user": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "path"
   ],
   "type": "object"
  },
  "V1DownwardAPIVolumeSource": {
   "properties": {
    "defaultMode": {
     "format": "int64",
     "type": "integer"
    },
    "defaultUser": {
     "format": "int64",
     "type": "integer"
    },
    "items": {
     "items": {
      "$ref": "#/components/schemas/V1DownwardAPIVolumeFile"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1EmptyDirVolumeSource": {
   "properties": {
    "medium": {
     "type": "string"
    },
    "mode": {
     "format": "int64",
     "type": "integer"
    },
    "sizeLimit": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Endpoint": {
   "properties": {
    "addresses": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "conditions": {
     "$ref": "#/components/schemas/V1EndpointConditions"
    },
    "deprecatedTopology": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "hints": {
     "$ref": "#/components/schemas/V1EndpointHints"
    },
    "hostname": {
     "type": "string"
    },
    "nodeName": {
     "type": "string"
    },
    "targetRef": {
     "$ref": "#/components/schemas/V1ObjectReference"
    },
    "zone": {
     "type": "string"
    }
   },
   "required": [
    "addresses"
   ],
   "type": "object"
  },
  "V1EndpointAddress": {
   "properties": {
    "hostname": {
     "type": "string"
    },
    "ip": {
     "type": "string"
    },
    "nodeName": {
     "type": "string"
    },
    "targetRef": {
     "$ref": "#/components/schemas/V1ObjectReference"
    }
   },
   "required": [
    "ip"
   ],
   "type": "object"
  },
  "V1EndpointConditions": {
   "properties": {
    "ready": {
     "type": "boolean"
    },
    "serving": {
     "type": "boolean"
    },
    "terminating": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1EndpointHints": {
   "properties": {
    "forNodes": {
     "items": {
      "$ref": "#/components/schemas/V1ForNode"
     },
     "type": "array"
    },
    "forZones": {
     "items": {
      "$ref": "#/components/schemas/V1ForZone"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1EndpointSlice": {
   "properties": {
    "addressType": {
     "type": "string"
    },
    "apiVersion": {
     "type": "string"
    },
    "endpoints": {
     "items": {
      "$ref": "#/components/schemas/V1Endpoint"
     },
     "type": "array"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "ports": {
     "items": {
      "$ref": "#/components/schemas/DiscoveryV1EndpointPort"
     },
     "type": "array"
    }
   },
   "required": [
    "addressType"
   ],
   "type": "object"
  },
  "V1EndpointSubset": {
   "properties": {
    "addresses": {
     "items": {
      "$ref": "#/components/schemas/V1EndpointAddress"
     },
     "type": "array"
    },
    "notReadyAddresses": {
     "items": {
      "$ref": "#/components/schemas/V1EndpointAddress"
     },
     "type": "array"
    },
    "ports": {
     "items": {
      "$ref": "#/components/schemas/CoreV1EndpointPort"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1Endpoints": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "subsets": {
     "items": {
      "$ref": "#/components/schemas/V1EndpointSubset"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1EnvFromSource": {
   "properties": {
    "configMapRef": {
     "$ref": "#/components/schemas/V1ConfigMapEnvSource"
    },
    "prefix": {
     "type": "string"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1SecretEnvSource"
    }
   },
   "type": "object"
  },
  "V1EnvVar": {
   "properties": {
    "name": {
     "type": "string"
    },
    "value": {
     "type": "string"
    },
    "valueFrom": {
     "$ref": "#/components/schemas/V1EnvVarSource"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1EnvVarSource": {
   "properties": {
    "configMapKeyRef": {
     "$ref": "#/components/schemas/V1ConfigMapKeySelector"
    },
    "fieldRef": {
     "$ref": "#/components/schemas/V1ObjectFieldSelector"
    },
    "fileKeyRef": {
     "$ref": "#/components/schemas/V1FileKeySelector"
    },
    "resourceFieldRef": {
     "$ref": "#/components/schemas/V1ResourceFieldSelector"
    },
    "secretKeyRef": {
     "$ref": "#/components/schemas/V1SecretKeySelector"
    }
   },
   "type": "object"
  },
  "V1EphemeralContainer": {
   "properties": {
    "args": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "command": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "env": {
     "items": {
      "$ref": "#/components/schemas/V1EnvVar"
     },
     "type": "array"
    },
    "envFrom": {
     "items": {
      "$ref": "#/components/schemas/V1EnvFromSource"
     },
     "type": "array"
    },
    "image": {
     "type": "string"
    },
    "imagePullPolicy": {
     "type": "string"
    },
    "lifecycle": {
     "$ref": "#/components/schemas/V1Lifecycle"
    },
    "livenessProbe": {
     "$ref": "#/components/schemas/V1Probe"
    },
    "name": {
     "type": "string"
    },
    "ports": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerPort"
     },
     "type": "array"
    },
    "readinessProbe": {
     "$ref": "#/components/schemas/V1Probe"
    },
    "resizePolicy": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerResizePolicy"
     },
     "type": "array"
    },
    "resources": {
     "$ref": "#/components/schemas/V1ResourceRequirements"
    },
    "restartPolicy": {
     "type": "string"
    },
    "restartPolicyRules": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerRestartRule"
     },
     "type": "array"
    },
    "securityContext": {
     "$ref": "#/components/schemas/V1SecurityContext"
    },
    "startupProbe": {
     "$ref": "#/components/schemas/V1Probe"
    },
    "stdin": {
     "type": "boolean"
    },
    "stdinOnce": {
     "type": "boolean"
    },
    "targetContainerName": {
     "type": "string"
    },
    "terminationMessagePath": {
     "type": "string"
    },
    "terminationMessagePolicy": {
     "type": "string"
    },
    "tty": {
     "type": "boolean"
    },
    "volumeDevices": {
     "items": {
      "$ref": "#/components/schemas/V1VolumeDevice"
     },
     "type": "array"
    },
    "volumeMounts": {
     "items": {
      "$ref": "#/components/schemas/V1VolumeMount"
     },
     "type": "array"
    },
    "workingDir": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1EphemeralVolumeSource": {
   "properties": {
    "volumeClaimTemplate": {
     "$ref": "#/components/schemas/V1PersistentVolumeClaimTemplate"
    }
   },
   "type": "object"
  },
  "V1EventSource": {
   "properties": {
    "component": {
     "type": "string"
    },
    "host": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Eviction": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "deleteOptions": {
     "$ref": "#/components/schemas/V1DeleteOptions"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    }
   },
   "type": "object"
  },
  "V1EvictionResponder": {
   "properties": {
    "name": {
     "type": "string"
    },
    "priority": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "name",
    "priority"
   ],
   "type": "object"
  },
  "V1ExecAction": {
   "properties": {
    "command": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1FCVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "lun": {
     "format": "int64",
     "type": "integer"
    },
    "readOnly": {
     "type": "boolean"
    },
    "targetWWNs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "wwids": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1FieldSelectorAttributes": {
   "properties": {
    "rawSelector": {
     "type": "string"
    },
    "requirements": {
     "items": {
      "$ref": "#/components/schemas/V1FieldSelectorRequirement"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1FieldSelectorRequirement": {
   "properties": {
    "key": {
     "type": "string"
    },
    "operator": {
     "type": "string"
    },
    "values": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "required": [
    "key",
    "operator"
   ],
   "type": "object"
  },
  "V1FileKeySelector": {
   "properties": {
    "key": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    },
    "path": {
     "type": "string"
    },
    "volumeName": {
     "type": "string"
    }
   },
   "required": [
    "key",
    "path",
    "volumeName"
   ],
   "type": "object"
  },
  "V1FlexVolumeSource": {
   "properties": {
    "driver": {
     "type": "string"
    },
    "fsType": {
     "type": "string"
    },
    "options": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "readOnly": {
     "type": "boolean"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    }
   },
   "required": [
    "driver"
   ],
   "type": "object"
  },
  "V1FlockerVolumeSource": {
   "properties": {
    "datasetName": {
     "type": "string"
    },
    "datasetUUID": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ForNode": {
   "properties": {
    "name": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1ForZone": {
   "properties": {
    "name": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1GCEPersistentDiskVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "partition": {
     "format": "int64",
     "type": "integer"
    },
    "pdName": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    }
   },
   "required": [
    "pdName"
   ],
   "type": "object"
  },
  "V1GRPCAction": {
   "properties": {
    "mode": {
     "type": "string"
    },
    "port": {
     "format": "int64",
     "type": "integer"
    },
    "service": {
     "type": "string"
    }
   },
   "required": [
    "port"
   ],
   "type": "object"
  },
  "V1GitRepoVolumeSource": {
   "properties": {
    "directory": {
     "type": "string"
    },
    "repository": {
     "type": "string"
    },
    "revision": {
     "type": "string"
    }
   },
   "required": [
    "repository"
   ],
   "type": "object"
  },
  "V1GlusterfsVolumeSource": {
   "properties": {
    "endpoints": {
     "type": "string"
    },
    "path": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    }
   },
   "required": [
    "endpoints",
    "path"
   ],
   "type": "object"
  },
  "V1HTTPGetAction": {
   "properties": {
    "host": {
     "type": "string"
    },
    "httpHeaders": {
     "items": {
      "$ref": "#/components/schemas/V1HTTPHeader"
     },
     "type": "array"
    },
    "path": {
     "type": "string"
    },
    "port": {},
    "protocol": {
     "type": "string"
    },
    "scheme": {
     "type": "string"
    }
   },
   "required": [
    "port"
   ],
   "type": "object"
  },
  "V1HTTPHeader": {
   "properties": {
    "name": {
     "type": "string"
    },
    "value": {
     "type": "string"
    }
   },
   "required": [
    "name",
    "value"
   ],
   "type": "object"
  },
  "V1HostAlias": {
   "properties": {
    "hostnames": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "ip": {
     "type": "string"
    }
   },
   "required": [
    "ip"
   ],
   "type": "object"
  },
  "V1HostIP": {
   "properties": {
    "ip": {
     "type": "string"
    }
   },
   "required": [
    "ip"
   ],
   "type": "object"
  },
  "V1HostPathVolumeSource": {
   "properties": {
    "path": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "path"
   ],
   "type": "object"
  },
  "V1ISCSIVolumeSource": {
   "properties": {
    "chapAuthDiscovery": {
     "type": "boolean"
    },
    "chapAuthSession": {
     "type": "boolean"
    },
    "fsType": {
     "type": "string"
    },
    "initiatorName": {
     "type": "string"
    },
    "iqn": {
     "type": "string"
    },
    "iscsiInterface": {
     "type": "string"
    },
    "lun": {
     "format": "int64",
     "type": "integer"
    },
    "portals": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "readOnly": {
     "type": "boolean"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    },
    "targetPortal": {
     "type": "string"
    }
   },
   "required": [
    "iqn",
    "lun",
    "targetPortal"
   ],
   "type": "object"
  },
  "V1ImageVolumeSource": {
   "properties": {
    "pullPolicy": {
     "type": "string"
    },
    "reference": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ImageVolumeStatus": {
   "properties": {
    "imageRef": {
     "type": "string"
    }
   },
   "required": [
    "imageRef"
   ],
   "type": "object"
  },
  "V1KeyToPath": {
   "properties": {
    "key": {
     "type": "string"
    },
    "mode": {
     "format": "int64",
     "type": "integer"
    },
    "path": {
     "type": "string"
    },
    "user": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "key",
    "path"
   ],
   "type": "object"
  },
  "V1LabelSelector": {
   "properties": {
    "matchExpressions": {
     "items": {
      "$ref": "#/components/schemas/V1LabelSelectorRequirement"
     },
     "type": "array"
    },
    "matchLabels": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    }
   },
   "type": "object"
  },
  "V1LabelSelectorAttributes": {
   "properties": {
    "rawSelector": {
     "type": "string"
    },
    "requirements": {
     "items": {
      "$ref": "#/components/schemas/V1LabelSelectorRequirement"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1LabelSelectorRequirement": {
   "properties": {
    "key": {
     "type": "string"
    },
    "operator": {
     "type": "string"
    },
    "values": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "required": [
    "key",
    "operator"
   ],
   "type": "object"
  },
  "V1Lease": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1LeaseSpec"
    }
   },
   "type": "object"
  },
  "V1LeaseSpec": {
   "properties": {
    "acquireTime": {
     "format": "date-time",
     "type": "string"
    },
    "holderIdentity": {
     "type": "string"
    },
    "leaseDurationSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "leaseTransitions": {
     "format": "int64",
     "type": "integer"
    },
    "preferredHolder": {
     "type": "string"
    },
    "renewTime": {
     "format": "date-time",
     "type": "string"
    },
    "strategy": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Lifecycle": {
   "properties": {
    "postStart": {
     "$ref": "#/components/schemas/V1LifecycleHandler"
    },
    "preStop": {
     "$ref": "#/components/schemas/V1LifecycleHandler"
    },
    "stopSignal": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1LifecycleHandler": {
   "properties": {
    "exec": {
     "$ref": "#/components/schemas/V1ExecAction"
    },
    "httpGet": {
     "$ref": "#/components/schemas/V1HTTPGetAction"
    },
    "sleep": {
     "$ref": "#/components/schemas/V1SleepAction"
    },
    "tcpSocket": {
     "$ref": "#/components/schemas/V1TCPSocketAction"
    }
   },
   "type": "object"
  },
  "V1LinuxContainerUser": {
   "properties": {
    "gid": {
     "format": "int64",
     "type": "integer"
    },
    "supplementalGroups": {
     "items": {
      "format": "int64",
      "type": "integer"
     },
     "type": "array"
    },
    "uid": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "gid",
    "uid"
   ],
   "type": "object"
  },
  "V1LoadBalancerIngress": {
   "properties": {
    "hostname": {
     "type": "string"
    },
    "ip": {
     "type": "string"
    },
    "ipMode": {
     "type": "string"
    },
    "ports": {
     "items": {
      "$ref": "#/components/schemas/V1PortStatus"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1LoadBalancerStatus": {
   "properties": {
    "ingress": {
     "items": {
      "$ref": "#/components/schemas/V1LoadBalancerIngress"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1LocalObjectReference": {
   "properties": {
    "name": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1LocalSubjectAccessReview": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1SubjectAccessReviewSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1SubjectAccessReviewStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1ManagedFieldsEntry": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "fieldsType": {
     "type": "string"
    },
    "fieldsV1": {},
    "manager": {
     "type": "string"
    },
    "operation": {
     "type": "string"
    },
    "subresource": {
     "type": "string"
    },
    "time": {
     "format": "date-time",
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1NFSVolumeSource": {
   "properties": {
    "path": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "server": {
     "type": "string"
    }
   },
   "required": [
    "path",
    "server"
   ],
   "type": "object"
  },
  "V1Namespace": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1NamespaceSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1NamespaceStatus"
    }
   },
   "type": "object"
  },
  "V1NamespaceCondition": {
   "properties": {
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "status",
    "type"
   ],
   "type": "object"
  },
  "V1NamespaceSpec": {
   "properties": {
    "finalizers": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1NamespaceStatus": {
   "properties": {
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1NamespaceCondition"
     },
     "type": "array"
    },
    "phase": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Node": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1NodeSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1NodeStatus"
    }
   },
   "type": "object"
  },
  "V1NodeAddress": {
   "properties": {
    "address": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "address",
    "type"
   ],
   "type": "object"
  },
  "V1NodeAffinity": {
   "properties": {
    "preferredDuringSchedulingIgnoredDuringExecution": {
     "items": {
      "$ref": "#/components/schemas/V1PreferredSchedulingTerm"
     },
     "type": "array"
    },
    "requiredDuringSchedulingIgnoredDuringExecution": {
     "$ref": "#/components/schemas/V1NodeSelector"
    }
   },
   "type": "object"
  },
  "V1NodeAllocatableMappedResources": {
   "properties": {
    "name": {
     "type": "string"
    },
    "quantity": {
     "type": "string"
    }
   },
   "required": [
    "name",
    "quantity"
   ],
   "type": "object"
  },
  "V1NodeAllocatableOverheadResources": {
   "properties": {
    "name": {
     "type": "string"
    },
    "perContainer": {
     "type": "string"
    },
    "perPod": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1NodeAllocatableResourceClaimStatus": {
   "properties": {
    "containers": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "mapping": {
     "items": {
      "$ref": "#/components/schemas/V1NodeAllocatableMappedResources"
     },
     "type": "array"
    },
    "overhead": {
     "items": {
      "$ref": "#/components/schemas/V1NodeAllocatableOverheadResources"
     },
     "type": "array"
    },
    "resourceClaimName": {
     "type": "string"
    }
   },
   "required": [
    "resourceClaimName"
   ],
   "type": "object"
  },
  "V1NodeCondition": {
   "properties": {
    "lastHeartbeatTime": {
     "format": "date-time",
     "type": "string"
    },
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "status",
    "type"
   ],
   "type": "object"
  },
  "V1NodeConfigSource": {
   "properties": {
    "configMap": {
     "$ref": "#/components/schemas/V1ConfigMapNodeConfigSource"
    }
   },
   "type": "object"
  },
  "V1NodeConfigStatus": {
   "properties": {
    "active": {
     "$ref": "#/components/schemas/V1NodeConfigSource"
    },
    "assigned": {
     "$ref": "#/components/schemas/V1NodeConfigSource"
    },
    "error": {
     "type": "string"
    },
    "lastKnownGood": {
     "$ref": "#/components/schemas/V1NodeConfigSource"
    }
   },
   "type": "object"
  },
  "V1NodeDaemonEndpoints": {
   "properties": {
    "kubeletEndpoint": {
     "$ref": "#/components/schemas/V1DaemonEndpoint"
    }
   },
   "type": "object"
  },
  "V1NodeFeatures": {
   "properties": {
    "supplementalGroupsPolicy": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1NodePodPreemptionPolicy": {
   "properties": {
    "disableResizePreemption": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1NodeRuntimeHandler": {
   "properties": {
    "features": {
     "$ref": "#/components/schemas/V1NodeRuntimeHandlerFeatures"
    },
    "name": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1NodeRuntimeHandlerFeatures": {
   "properties": {
    "recursiveReadOnlyMounts": {
     "type": "boolean"
    },
    "userNamespaces": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1NodeSelector": {
   "properties": {
    "nodeSelectorTerms": {
     "items": {
      "$ref": "#/components/schemas/V1NodeSelectorTerm"
     },
     "type": "array"
    }
   },
   "required": [
    "nodeSelectorTerms"
   ],
   "type": "object"
  },
  "V1NodeSelectorRequirement": {
   "properties": {
    "key": {
     "type": "string"
    },
    "operator": {
     "type": "string"
    },
    "values": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "required": [
    "key",
    "operator"
   ],
   "type": "object"
  },
  "V1NodeSelectorTerm": {
   "properties": {
    "matchExpressions": {
     "items": {
      "$ref": "#/components/schemas/V1NodeSelectorRequirement"
     },
     "type": "array"
    },
    "matchFields": {
     "items": {
      "$ref": "#/components/schemas/V1NodeSelectorRequirement"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1NodeSpec": {
   "properties": {
    "configSource": {
     "$ref": "#/components/schemas/V1NodeConfigSource"
    },
    "externalID": {
     "type": "string"
    },
    "podCIDR": {
     "type": "string"
    },
    "podCIDRs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "podPreemptionPolicy": {
     "$ref": "#/components/schemas/V1NodePodPreemptionPolicy"
    },
    "providerID": {
     "type": "string"
    },
    "taints": {
     "items": {
      "$ref": "#/components/schemas/V1Taint"
     },
     "type": "array"
    },
    "unschedulable": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1NodeStatus": {
   "properties": {
    "addresses": {
     "items": {
      "$ref": "#/components/schemas/V1NodeAddress"
     },
     "type": "array"
    },
    "allocatable": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "capacity": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1NodeCondition"
     },
     "type": "array"
    },
    "config": {
     "$ref": "#/components/schemas/V1NodeConfigStatus"
    },
    "daemonEndpoints": {
     "$ref": "#/components/schemas/V1NodeDaemonEndpoints"
    },
    "declaredFeatures": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "features": {
     "$ref": "#/components/schemas/V1NodeFeatures"
    },
    "images": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerImage"
     },
     "type": "array"
    },
    "nodeInfo": {
     "$ref": "#/components/schemas/V1NodeSystemInfo"
    },
    "phase": {
     "type": "string"
    },
    "runtimeHandlers": {
     "items": {
      "$ref": "#/components/schemas/V1NodeRuntimeHandler"
     },
     "type": "array"
    },
    "volumesAttached": {
     "items": {
      "$ref": "#/components/schemas/V1AttachedVolume"
     },
     "type": "array"
    },
    "volumesInUse": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1NodeSwapStatus": {
   "properties": {
    "capacity": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1NodeSystemInfo": {
   "properties": {
    "architecture": {
     "type": "string"
    },
    "bootID": {
     "type": "string"
    },
    "containerRuntimeVersion": {
     "type": "string"
    },
    "kernelVersion": {
     "type": "string"
    },
    "kubeProxyVersion": {
     "type": "string"
    },
    "kubeletVersion": {
     "type": "string"
    },
    "machineID": {
     "type": "string"
    },
    "operatingSystem": {
     "type": "string"
    },
    "osImage": {
     "type": "string"
    },
    "runningInUserNamespace": {
     "type": "boolean"
    },
    "swap": {
     "$ref": "#/components/schemas/V1NodeSwapStatus"
    },
    "systemUUID": {
     "type": "string"
    }
   },
   "required": [
    "architecture",
    "bootID",
    "containerRuntimeVersion",
    "kernelVersion",
    "kubeProxyVersion",
    "kubeletVersion",
    "machineID",
    "operatingSystem",
    "osImage",
    "systemUUID"
   ],
   "type": "object"
  },
  "V1NonResourceAttributes": {
   "properties": {
    "path": {
     "type": "string"
    },
    "verb": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1NonResourceRule": {
   "properties": {
    "nonResourceURLs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "verbs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "required": [
    "verbs"
   ],
   "type": "object"
  },
  "V1ObjectFieldSelector": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "fieldPath": {
     "type": "string"
    }
   },
   "required": [
    "fieldPath"
   ],
   "type": "object"
  },
  "V1ObjectMeta": {
   "properties": {
    "annotations": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "creationTimestamp": {
     "format": "date-time",
     "type": "string"
    },
    "deletionGracePeriodSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "deletionTimestamp": {
     "format": "date-time",
     "type": "string"
    },
    "finalizers": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "generateName": {
     "type": "string"
    },
    "generation": {
     "format": "int64",
     "type": "integer"
    },
    "labels": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "managedFields": {
     "items": {
      "$ref": "#/components/schemas/V1ManagedFieldsEntry"
     },
     "type": "array"
    },
    "name": {
     "type": "string"
    },
    "namespace": {
     "type": "string"
    },
    "ownerReferences": {
     "items": {
      "$ref": "#/components/schemas/V1OwnerReference"
     },
     "type": "array"
    },
    "resourceVersion": {
     "type": "string"
    },
    "selfLink": {
     "type": "string"
    },
    "uid": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ObjectReference": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "fieldPath": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "namespace": {
     "type": "string"
    },
    "resourceVersion": {
     "type": "string"
    },
    "uid": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1OwnerReference": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "blockOwnerDeletion": {
     "type": "boolean"
    },
    "controller": {
     "type": "boolean"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "uid": {
     "type": "string"
    }
   },
   "required": [
    "apiVersion",
    "kind",
    "name",
    "uid"
   ],
   "type": "object"
  },
  "V1PersistentVolumeClaimSpec": {
   "properties": {
    "accessModes": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "dataSource": {
     "$ref": "#/components/schemas/V1TypedLocalObjectReference"
    },
    "dataSourceRef": {
     "$ref": "#/components/schemas/V1TypedObjectReference"
    },
    "resources": {
     "$ref": "#/components/schemas/V1VolumeResourceRequirements"
    },
    "selector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "storageClassName": {
     "type": "string"
    },
    "volumeAttributesClassName": {
     "type": "string"
    },
    "volumeMode": {
     "type": "string"
    },
    "volumeName": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1PersistentVolumeClaimTemplate": {
   "properties": {
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1PersistentVolumeClaimSpec"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1PersistentVolumeClaimVolumeSource": {
   "properties": {
    "claimName": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    }
   },
   "required": [
    "claimName"
   ],
   "type": "object"
  },
  "V1PhotonPersistentDiskVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "pdID": {
     "type": "string"
    }
   },
   "required": [
    "pdID"
   ],
   "type": "object"
  },
  "V1Pod": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1PodSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1PodStatus"
    }
   },
   "type": "object"
  },
  "V1PodAffinity": {
   "properties": {
    "preferredDuringSchedulingIgnoredDuringExecution": {
     "items": {
      "$ref": "#/components/schemas/V1WeightedPodAffinityTerm"
     },
     "type": "array"
    },
    "requiredDuringSchedulingIgnoredDuringExecution": {
     "items": {
      "$ref": "#/components/schemas/V1PodAffinityTerm"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1PodAffinityTerm": {
   "properties": {
    "labelSelector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "matchLabelKeys": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "mismatchLabelKeys": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "namespaceSelector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "namespaces": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "topologyKey": {
     "type": "string"
    }
   },
   "required": [
    "topologyKey"
   ],
   "type": "object"
  },
  "V1PodAntiAffinity": {
   "properties": {
    "preferredDuringSchedulingIgnoredDuringExecution": {
     "items": {
      "$ref": "#/components/schemas/V1WeightedPodAffinityTerm"
     },
     "type": "array"
    },
    "requiredDuringSchedulingIgnoredDuringExecution": {
     "items": {
      "$ref": "#/components/schemas/V1PodAffinityTerm"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1PodCertificateProjection": {
   "properties": {
    "certificateChainPath": {
     "type": "string"
    },
    "credentialBundlePath": {
     "type": "string"
    },
    "keyPath": {
     "type": "string"
    },
    "keyType": {
     "type": "string"
    },
    "maxExpirationSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "signerName": {
     "type": "string"
    },
    "user": {
     "format": "int64",
     "type": "integer"
    },
    "userAnnotations": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    }
   },
   "required": [
    "keyType",
    "signerName"
   ],
   "type": "object"
  },
  "V1PodCondition": {
   "properties": {
    "lastProbeTime": {
     "format": "date-time",
     "type": "string"
    },
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "status",
    "type"
   ],
   "type": "object"
  },
  "V1PodDNSConfig": {
   "properties": {
    "nameservers": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "options": {
     "items": {
      "$ref": "#/components/schemas/V1PodDNSConfigOption"
     },
     "type": "array"
    },
    "searches": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1PodDNSConfigOption": {
   "properties": {
    "name": {
     "type": "string"
    },
    "value": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1PodDisruptionBudget": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1PodDisruptionBudgetSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1PodDisruptionBudgetStatus"
    }
   },
   "type": "object"
  },
  "V1PodDisruptionBudgetSpec": {
   "properties": {
    "maxUnavailable": {},
    "minAvailable": {},
    "selector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "unhealthyPodEvictionPolicy": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1PodDisruptionBudgetStatus": {
   "properties": {
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1Condition"
     },
     "type": "array"
    },
    "currentHealthy": {
     "format": "int64",
     "type": "integer"
    },
    "desiredHealthy": {
     "format": "int64",
     "type": "integer"
    },
    "disruptedPods": {
     "additionalProperties": {
      "format": "date-time",
      "type": "string"
     },
     "type": "object"
    },
    "disruptionsAllowed": {
     "format": "int64",
     "type": "integer"
    },
    "expectedPods": {
     "format": "int64",
     "type": "integer"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1PodExtendedResourceClaimStatus": {
   "properties": {
    "requestMappings": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerExtendedResourceRequest"
     },
     "type": "array"
    },
    "resourceClaimName": {
     "type": "string"
    }
   },
   "required": [
    "requestMappings",
    "resourceClaimName"
   ],
   "type": "object"
  },
  "V1PodIP": {
   "properties": {
    "ip": {
     "type": "string"
    }
   },
   "required": [
    "ip"
   ],
   "type": "object"
  },
  "V1PodOS": {
   "properties": {
    "name": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1PodReadinessGate": {
   "properties": {
    "conditionType": {
     "type": "string"
    }
   },
   "required": [
    "conditionType"
   ],
   "type": "object"
  },
  "V1PodResourceClaim": {
   "properties": {
    "name": {
     "type": "string"
    },
    "resourceClaimName": {
     "type": "string"
    },
    "resourceClaimTemplateName": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1PodResourceClaimStatus": {
   "properties": {
    "name": {
     "type": "string"
    },
    "resourceClaimName": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1PodSchedulingGate": {
   "properties": {
    "name": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1PodSchedulingGroup": {
   "properties": {
    "podGroupName": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1PodSecurityContext": {
   "properties": {
    "appArmorProfile": {
     "$ref": "#/components/schemas/V1AppArmorProfile"
    },
    "fsGroup": {
     "format": "int64",
     "type": "integer"
    },
    "fsGroupChangePolicy": {
     "type": "string"
    },
    "runAsGroup": {
     "format": "int64",
     "type": "integer"
    },
    "runAsNonRoot": {
     "type": "boolean"
    },
    "runAsUser": {
     "format": "int64",
     "type": "integer"
    },
    "seLinuxChangePolicy": {
     "type": "string"
    },
    "seLinuxOptions": {
     "$ref": "#/components/schemas/V1SELinuxOptions"
    },
    "seccompProfile": {
     "$ref": "#/components/schemas/V1SeccompProfile"
    },
    "supplementalGroups": {
     "items": {
      "format": "int64",
      "type": "integer"
     },
     "type": "array"
    },
    "supplementalGroupsPolicy": {
     "type": "string"
    },
    "sysctls": {
     "items": {
      "$ref": "#/components/schemas/V1Sysctl"
     },
     "type": "array"
    },
    "windowsOptions": {
     "$ref": "#/components/schemas/V1WindowsSecurityContextOptions"
    }
   },
   "type": "object"
  },
  "V1PodSpec": {
   "properties": {
    "activeDeadlineSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "affinity": {
     "$ref": "#/components/schemas/V1Affinity"
    },
    "automountServiceAccountToken": {
     "type": "boolean"
    },
    "containers": {
     "items": {
      "$ref": "#/components/schemas/V1Container"
     },
     "type": "array"
    },
    "dnsConfig": {
     "$ref": "#/components/schemas/V1PodDNSConfig"
    },
    "dnsPolicy": {
     "type": "string"
    },
    "enableServiceLinks": {
     "type": "boolean"
    },
    "ephemeralContainers": {
     "items": {
      "$ref": "#/components/schemas/V1EphemeralContainer"
     },
     "type": "array"
    },
    "evictionResponders": {
     "items": {
      "$ref": "#/components/schemas/V1EvictionResponder"
     },
     "type": "array"
    },
    "hostAliases": {
     "items": {
      "$ref": "#/components/schemas/V1HostAlias"
     },
     "type": "array"
    },
    "hostIPC": {
     "type": "boolean"
    },
    "hostNetwork": {
     "type": "boolean"
    },
    "hostPID": {
     "type": "boolean"
    },
    "hostUsers": {
     "type": "boolean"
    },
    "hostname": {
     "type": "string"
    },
    "hostnameOverride": {
     "type": "string"
    },
    "imagePullSecrets": {
     "items": {
      "$ref": "#/components/schemas/V1LocalObjectReference"
     },
     "type": "array"
    },
    "initContainers": {
     "items": {
      "$ref": "#/components/schemas/V1Container"
     },
     "type": "array"
    },
    "nodeName": {
     "type": "string"
    },
    "nodeSelector": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "os": {
     "$ref": "#/components/schemas/V1PodOS"
    },
    "overhead": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "preemptionPolicy": {
     "type": "string"
    },
    "priority": {
     "format": "int64",
     "type": "integer"
    },
    "priorityClassName": {
     "type": "string"
    },
    "readinessGates": {
     "items": {
      "$ref": "#/components/schemas/V1PodReadinessGate"
     },
     "type": "array"
    },
    "resourceClaims": {
     "items": {
      "$ref": "#/components/schemas/V1PodResourceClaim"
     },
     "type": "array"
    },
    "resources": {
     "$ref": "#/components/schemas/V1ResourceRequirements"
    },
    "restartPolicy": {
     "type": "string"
    },
    "runtimeClassName": {
     "type": "string"
    },
    "schedulerName": {
     "type": "string"
    },
    "schedulingGates": {
     "items": {
      "$ref": "#/components/schemas/V1PodSchedulingGate"
     },
     "type": "array"
    },
    "schedulingGroup": {
     "$ref": "#/components/schemas/V1PodSchedulingGroup"
    },
    "securityContext": {
     "$ref": "#/components/schemas/V1PodSecurityContext"
    },
    "serviceAccount": {
     "type": "string"
    },
    "serviceAccountName": {
     "type": "string"
    },
    "setHostnameAsFQDN": {
     "type": "boolean"
    },
    "shareProcessNamespace": {
     "type": "boolean"
    },
    "subdomain": {
     "type": "string"
    },
    "terminationGracePeriodSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "tolerations": {
     "items": {
      "$ref": "#/components/schemas/V1Toleration"
     },
     "type": "array"
    },
    "topologySpreadConstraints": {
     "items": {
      "$ref": "#/components/schemas/V1TopologySpreadConstraint"
     },
     "type": "array"
    },
    "volumes": {
     "items": {
      "$ref": "#/components/schemas/V1Volume"
     },
     "type": "array"
    }
   },
   "required": [
    "containers"
   ],
   "type": "object"
  },
  "V1PodStatus": {
   "properties": {
    "allocatedResources": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1PodCondition"
     },
     "type": "array"
    },
    "containerStatuses": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerStatus"
     },
     "type": "array"
    },
    "ephemeralContainerStatuses": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerStatus"
     },
     "type": "array"
    },
    "extendedResourceClaimStatus": {
     "$ref": "#/components/schemas/V1PodExtendedResourceClaimStatus"
    },
    "hostIP": {
     "type": "string"
    },
    "hostIPs": {
     "items": {
      "$ref": "#/components/schemas/V1HostIP"
     },
     "type": "array"
    },
    "initContainerStatuses": {
     "items": {
      "$ref": "#/components/schemas/V1ContainerStatus"
     },
     "type": "array"
    },
    "message": {
     "type": "string"
    },
    "nodeAllocatableResourceClaimStatuses": {
     "items": {
      "$ref": "#/components/schemas/V1NodeAllocatableResourceClaimStatus"
     },
     "type": "array"
    },
    "nominatedNodeName": {
     "type": "string"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    },
    "phase": {
     "type": "string"
    },
    "podIP": {
     "type": "string"
    },
    "podIPs": {
     "items": {
      "$ref": "#/components/schemas/V1PodIP"
     },
     "type": "array"
    },
    "qosClass": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "resize": {
     "type": "string"
    },
    "resourceClaimStatuses": {
     "items": {
      "$ref": "#/components/schemas/V1PodResourceClaimStatus"
     },
     "type": "array"
    },
    "resources": {
     "$ref": "#/components/schemas/V1ResourceRequirements"
    },
    "startTime": {
     "format": "date-time",
     "type": "string"
    },
    "volumeHealth": {
     "items": {
      "$ref": "#/components/schemas/V1PodVolumeHealth"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1PodTemplateSpec": {
   "properties": {
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1PodSpec"
    }
   },
   "type": "object"
  },
  "V1PodVolumeHealth": {
   "properties": {
    "healthConditions": {
     "items": {
      "$ref": "#/components/schemas/V1VolumeHealthCondition"
     },
     "type": "array"
    },
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1PolicyRule": {
   "properties": {
    "apiGroups": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "nonResourceURLs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "resourceNames": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "resources": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "verbs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "required": [
    "verbs"
   ],
   "type": "object"
  },
  "V1PortStatus": {
   "properties": {
    "error": {
     "type": "string"
    },
    "port": {
     "format": "int64",
     "type": "integer"
    },
    "protocol": {
     "type": "string"
    }
   },
   "required": [
    "port",
    "protocol"
   ],
   "type": "object"
  },
  "V1PortworxVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "volumeID": {
     "type": "string"
    }
   },
   "required": [
    "volumeID"
   ],
   "type": "object"
  },
  "V1Preconditions": {
   "properties": {
    "resourceVersion": {
     "type": "string"
    },
    "uid": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1PreferredSchedulingTerm": {
   "properties": {
    "preference": {
     "$ref": "#/components/schemas/V1NodeSelectorTerm"
    },
    "weight": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "preference",
    "weight"
   ],
   "type": "object"
  },
  "V1Probe": {
   "properties": {
    "exec": {
     "$ref": "#/components/schemas/V1ExecAction"
    },
    "failureThreshold": {
     "format": "int64",
     "type": "integer"
    },
    "grpc": {
     "$ref": "#/components/schemas/V1GRPCAction"
    },
    "httpGet": {
     "$ref": "#/components/schemas/V1HTTPGetAction"
    },
    "initialDelaySeconds": {
     "format": "int64",
     "type": "integer"
    },
    "periodSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "successThreshold": {
     "format": "int64",
     "type": "integer"
    },
    "tcpSocket": {
     "$ref": "#/components/schemas/V1TCPSocketAction"
    },
    "terminationGracePeriodSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "timeoutSeconds": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1ProjectedVolumeSource": {
   "properties": {
    "defaultMode": {
     "format": "int64",
     "type": "integer"
    },
    "defaultUser": {
     "format": "int64",
     "type": "integer"
    },
    "sources": {
     "items": {
      "$ref": "#/components/schemas/V1VolumeProjection"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1QuobyteVolumeSource": {
   "properties": {
    "group": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "registry": {
     "type": "string"
    },
    "tenant": {
     "type": "string"
    },
    "user": {
     "type": "string"
    },
    "volume": {
     "type": "string"
    }
   },
   "required": [
    "registry",
    "volume"
   ],
   "type": "object"
  },
  "V1RBDVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "image": {
     "type": "string"
    },
    "keyring": {
     "type": "string"
    },
    "monitors": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "pool": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    },
    "user": {
     "type": "string"
    }
   },
   "required": [
    "image",
    "monitors"
   ],
   "type": "object"
  },
  "V1ReplicaSet": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1ReplicaSetSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1ReplicaSetStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1ReplicaSetCondition": {
   "properties": {
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ReplicaSetSpec": {
   "properties": {
    "minReadySeconds": {
     "format": "int64",
     "type": "integer"
    },
    "replicas": {
     "format": "int64",
     "type": "integer"
    },
    "selector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "template": {
     "$ref": "#/components/schemas/V1PodTemplateSpec"
    }
   },
   "required": [
    "selector"
   ],
   "type": "object"
  },
  "V1ReplicaSetStatus": {
   "properties": {
    "availableReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1ReplicaSetCondition"
     },
     "type": "array"
    },
    "fullyLabeledReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    },
    "readyReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "replicas": {
     "format": "int64",
     "type": "integer"
    },
    "terminatingReplicas": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "replicas"
   ],
   "type": "object"
  },
  "V1ResourceAttributes": {
   "properties": {
    "fieldSelector": {
     "$ref": "#/components/schemas/V1FieldSelectorAttributes"
    },
    "group": {
     "type": "string"
    },
    "labelSelector": {
     "$ref": "#/components/schemas/V1LabelSelectorAttributes"
    },
    "name": {
     "type": "string"
    },
    "namespace": {
     "type": "string"
    },
    "resource": {
     "type": "string"
    },
    "subresource": {
     "type": "string"
    },
    "verb": {
     "type": "string"
    },
    "version": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ResourceFieldSelector": {
   "properties": {
    "containerName": {
     "type": "string"
    },
    "divisor": {
     "type": "string"
    },
    "resource": {
     "type": "string"
    }
   },
   "required": [
    "resource"
   ],
   "type": "object"
  },
  "V1ResourceHealth": {
   "properties": {
    "health": {
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "resourceID": {
     "type": "string"
    }
   },
   "required": [
    "resourceID"
   ],
   "type": "object"
  },
  "V1ResourceRequirements": {
   "properties": {
    "claims": {
     "items": {
      "$ref": "#/components/schemas/CoreV1ResourceClaim"
     },
     "type": "array"
    },
    "limits": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "requests": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    }
   },
   "type": "object"
  },
  "V1ResourceRule": {
   "properties": {
    "apiGroups": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "resourceNames": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "resources": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "verbs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    }
   },
   "required": [
    "verbs"
   ],
   "type": "object"
  },
  "V1ResourceStatus": {
   "properties": {
    "name": {
     "type": "string"
    },
    "resources": {
     "items": {
      "$ref": "#/components/schemas/V1ResourceHealth"
     },
     "type": "array"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1Role": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "rules": {
     "items": {
      "$ref": "#/components/schemas/V1PolicyRule"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1RoleBinding": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "roleRef": {
     "$ref": "#/components/schemas/V1RoleRef"
    },
    "subjects": {
     "items": {
      "$ref": "#/components/schemas/RbacV1Subject"
     },
     "type": "array"
    }
   },
   "required": [
    "roleRef"
   ],
   "type": "object"
  },
  "V1RoleRef": {
   "properties": {
    "apiGroup": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "kind",
    "name"
   ],
   "type": "object"
  },
  "V1RollingUpdateDeployment": {
   "properties": {
    "maxSurge": {},
    "maxUnavailable": {}
   },
   "type": "object"
  },
  "V1SELinuxOptions": {
   "properties": {
    "level": {
     "type": "string"
    },
    "role": {
     "type": "string"
    },
    "type": {
     "type": "string"
    },
    "user": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Scale": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1ScaleSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1ScaleStatus"
    }
   },
   "type": "object"
  },
  "V1ScaleIOVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "gateway": {
     "type": "string"
    },
    "protectionDomain": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    },
    "sslEnabled": {
     "type": "boolean"
    },
    "storageMode": {
     "type": "string"
    },
    "storagePool": {
     "type": "string"
    },
    "system": {
     "type": "string"
    },
    "volumeName": {
     "type": "string"
    }
   },
   "required": [
    "gateway",
    "secretRef",
    "system"
   ],
   "type": "object"
  },
  "V1ScaleSpec": {
   "properties": {
    "replicas": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1ScaleStatus": {
   "properties": {
    "replicas": {
     "format": "int64",
     "type": "integer"
    },
    "selector": {
     "type": "string"
    }
   },
   "required": [
    "replicas"
   ],
   "type": "object"
  },
  "V1SeccompProfile": {
   "properties": {
    "localhostProfile": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "type"
   ],
   "type": "object"
  },
  "V1Secret": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "data": {
     "additionalProperties": {
      "format": "byte",
      "type": "string"
     },
     "type": "object"
    },
    "immutable": {
     "type": "boolean"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "stringData": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "type": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1SecretEnvSource": {
   "properties": {
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1SecretKeySelector": {
   "properties": {
    "key": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    }
   },
   "required": [
    "key"
   ],
   "type": "object"
  },
  "V1SecretProjection": {
   "properties": {
    "items": {
     "items": {
      "$ref": "#/components/schemas/V1KeyToPath"
     },
     "type": "array"
    },
    "name": {
     "type": "string"
    },
    "optional": {
     "type": "boolean"
    }
   },
   "type": "object"
  },
  "V1SecretVolumeSource": {
   "properties": {
    "defaultMode": {
     "format": "int64",
     "type": "integer"
    },
    "defaultUser": {
     "format": "int64",
     "type": "integer"
    },
    "items": {
     "items": {
      "$ref": "#/components/schemas/V1KeyToPath"
     },
     "type": "array"
    },
    "optional": {
     "type": "boolean"
    },
    "secretName": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1SecurityContext": {
   "properties": {
    "allowPrivilegeEscalation": {
     "type": "boolean"
    },
    "appArmorProfile": {
     "$ref": "#/components/schemas/V1AppArmorProfile"
    },
    "capabilities": {
     "$ref": "#/components/schemas/V1Capabilities"
    },
    "privileged": {
     "type": "boolean"
    },
    "procMount": {
     "type": "string"
    },
    "readOnlyRootFilesystem": {
     "type": "boolean"
    },
    "runAsGroup": {
     "format": "int64",
     "type": "integer"
    },
    "runAsNonRoot": {
     "type": "boolean"
    },
    "runAsUser": {
     "format": "int64",
     "type": "integer"
    },
    "seLinuxOptions": {
     "$ref": "#/components/schemas/V1SELinuxOptions"
    },
    "seccompProfile": {
     "$ref": "#/components/schemas/V1SeccompProfile"
    },
    "windowsOptions": {
     "$ref": "#/components/schemas/V1WindowsSecurityContextOptions"
    }
   },
   "type": "object"
  },
  "V1SelfSubjectAccessReview": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1SelfSubjectAccessReviewSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1SubjectAccessReviewStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1SelfSubjectAccessReviewSpec": {
   "properties": {
    "nonResourceAttributes": {
     "$ref": "#/components/schemas/V1NonResourceAttributes"
    },
    "resourceAttributes": {
     "$ref": "#/components/schemas/V1ResourceAttributes"
    }
   },
   "type": "object"
  },
  "V1SelfSubjectRulesReview": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1SelfSubjectRulesReviewSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1SubjectRulesReviewStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1SelfSubjectRulesReviewSpec": {
   "properties": {
    "namespace": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Service": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1ServiceSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1ServiceStatus"
    }
   },
   "type": "object"
  },
  "V1ServiceAccount": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "automountServiceAccountToken": {
     "type": "boolean"
    },
    "imagePullSecrets": {
     "items": {
      "$ref": "#/components/schemas/V1LocalObjectReference"
     },
     "type": "array"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "secrets": {
     "items": {
      "$ref": "#/components/schemas/V1ObjectReference"
     },
     "type": "array"
    }
   },
   "type": "object"
  },
  "V1ServiceAccountTokenProjection": {
   "properties": {
    "audience": {
     "type": "string"
    },
    "expirationSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "path": {
     "type": "string"
    },
    "user": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "path"
   ],
   "type": "object"
  },
  "V1ServicePort": {
   "properties": {
    "appProtocol": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "nodePort": {
     "format": "int64",
     "type": "integer"
    },
    "port": {
     "format": "int64",
     "type": "integer"
    },
    "protocol": {
     "type": "string"
    },
    "targetPort": {}
   },
   "required": [
    "port"
   ],
   "type": "object"
  },
  "V1ServiceSpec": {
   "properties": {
    "allocateLoadBalancerNodePorts": {
     "type": "boolean"
    },
    "clusterIP": {
     "type": "string"
    },
    "clusterIPs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "externalIPs": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "externalName": {
     "type": "string"
    },
    "externalTrafficPolicy": {
     "type": "string"
    },
    "healthCheckNodePort": {
     "format": "int64",
     "type": "integer"
    },
    "internalTrafficPolicy": {
     "type": "string"
    },
    "ipFamilies": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "ipFamilyPolicy": {
     "type": "string"
    },
    "loadBalancerClass": {
     "type": "string"
    },
    "loadBalancerIP": {
     "type": "string"
    },
    "loadBalancerSourceRanges": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "ports": {
     "items": {
      "$ref": "#/components/schemas/V1ServicePort"
     },
     "type": "array"
    },
    "publishNotReadyAddresses": {
     "type": "boolean"
    },
    "selector": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "sessionAffinity": {
     "type": "string"
    },
    "sessionAffinityConfig": {
     "$ref": "#/components/schemas/V1SessionAffinityConfig"
    },
    "trafficDistribution": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1ServiceStatus": {
   "properties": {
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V1Condition"
     },
     "type": "array"
    },
    "loadBalancer": {
     "$ref": "#/components/schemas/V1LoadBalancerStatus"
    }
   },
   "type": "object"
  },
  "V1SessionAffinityConfig": {
   "properties": {
    "clientIP": {
     "$ref": "#/components/schemas/V1ClientIPConfig"
    }
   },
   "type": "object"
  },
  "V1SleepAction": {
   "properties": {
    "seconds": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "seconds"
   ],
   "type": "object"
  },
  "V1StorageOSVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "secretRef": {
     "$ref": "#/components/schemas/V1LocalObjectReference"
    },
    "volumeName": {
     "type": "string"
    },
    "volumeNamespace": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1SubjectAccessReview": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1SubjectAccessReviewSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1SubjectAccessReviewStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1SubjectAccessReviewSpec": {
   "properties": {
    "extra": {
     "additionalProperties": {
      "items": {
       "type": "string"
      },
      "type": "array"
     },
     "type": "object"
    },
    "groups": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "nonResourceAttributes": {
     "$ref": "#/components/schemas/V1NonResourceAttributes"
    },
    "resourceAttributes": {
     "$ref": "#/components/schemas/V1ResourceAttributes"
    },
    "uid": {
     "type": "string"
    },
    "user": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1SubjectAccessReviewStatus": {
   "properties": {
    "allowed": {
     "type": "boolean"
    },
    "denied": {
     "type": "boolean"
    },
    "evaluationError": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    }
   },
   "required": [
    "allowed"
   ],
   "type": "object"
  },
  "V1SubjectRulesReviewStatus": {
   "properties": {
    "evaluationError": {
     "type": "string"
    },
    "incomplete": {
     "type": "boolean"
    },
    "nonResourceRules": {
     "items": {
      "$ref": "#/components/schemas/V1NonResourceRule"
     },
     "type": "array"
    },
    "resourceRules": {
     "items": {
      "$ref": "#/components/schemas/V1ResourceRule"
     },
     "type": "array"
    }
   },
   "required": [
    "incomplete",
    "nonResourceRules",
    "resourceRules"
   ],
   "type": "object"
  },
  "V1Sysctl": {
   "properties": {
    "name": {
     "type": "string"
    },
    "value": {
     "type": "string"
    }
   },
   "required": [
    "name",
    "value"
   ],
   "type": "object"
  },
  "V1TCPSocketAction": {
   "properties": {
    "host": {
     "type": "string"
    },
    "port": {}
   },
   "required": [
    "port"
   ],
   "type": "object"
  },
  "V1Taint": {
   "properties": {
    "effect": {
     "type": "string"
    },
    "key": {
     "type": "string"
    },
    "timeAdded": {
     "format": "date-time",
     "type": "string"
    },
    "value": {
     "type": "string"
    }
   },
   "required": [
    "effect",
    "key"
   ],
   "type": "object"
  },
  "V1TokenRequestSpec": {
   "properties": {
    "attestations": {
     "additionalProperties": {
      "items": {
       "type": "string"
      },
      "type": "array"
     },
     "type": "object"
    },
    "audiences": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "boundObjectRef": {
     "$ref": "#/components/schemas/V1BoundObjectReference"
    },
    "expirationSeconds": {
     "format": "int64",
     "type": "integer"
    }
   },
   "type": "object"
  },
  "V1TokenRequestStatus": {
   "properties": {
    "expirationTimestamp": {
     "format": "date-time",
     "type": "string"
    },
    "token": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1TokenReview": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V1TokenReviewSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V1TokenReviewStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V1TokenReviewSpec": {
   "properties": {
    "audiences": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "token": {
     "type": "string"
    }
   },
   "required": [
    "token"
   ],
   "type": "object"
  },
  "V1TokenReviewStatus": {
   "properties": {
    "audiences": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "authenticated": {
     "type": "boolean"
    },
    "error": {
     "type": "string"
    },
    "user": {
     "$ref": "#/components/schemas/V1UserInfo"
    }
   },
   "type": "object"
  },
  "V1Toleration": {
   "properties": {
    "effect": {
     "type": "string"
    },
    "key": {
     "type": "string"
    },
    "operator": {
     "type": "string"
    },
    "tolerationSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "value": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1TopologySpreadConstraint": {
   "properties": {
    "labelSelector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    },
    "matchLabelKeys": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "maxSkew": {
     "format": "int64",
     "type": "integer"
    },
    "minDomains": {
     "format": "int64",
     "type": "integer"
    },
    "nodeAffinityPolicy": {
     "type": "string"
    },
    "nodeTaintsPolicy": {
     "type": "string"
    },
    "topologyKey": {
     "type": "string"
    },
    "whenUnsatisfiable": {
     "type": "string"
    }
   },
   "required": [
    "maxSkew",
    "topologyKey",
    "whenUnsatisfiable"
   ],
   "type": "object"
  },
  "V1TypedLocalObjectReference": {
   "properties": {
    "apiGroup": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "kind",
    "name"
   ],
   "type": "object"
  },
  "V1TypedObjectReference": {
   "properties": {
    "apiGroup": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "namespace": {
     "type": "string"
    }
   },
   "required": [
    "kind",
    "name"
   ],
   "type": "object"
  },
  "V1UserInfo": {
   "properties": {
    "extra": {
     "additionalProperties": {
      "items": {
       "type": "string"
      },
      "type": "array"
     },
     "type": "object"
    },
    "groups": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "uid": {
     "type": "string"
    },
    "username": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V1Volume": {
   "properties": {
    "awsElasticBlockStore": {
     "$ref": "#/components/schemas/V1AWSElasticBlockStoreVolumeSource"
    },
    "azureDisk": {
     "$ref": "#/components/schemas/V1AzureDiskVolumeSource"
    },
    "azureFile": {
     "$ref": "#/components/schemas/V1AzureFileVolumeSource"
    },
    "cephfs": {
     "$ref": "#/components/schemas/V1CephFSVolumeSource"
    },
    "cinder": {
     "$ref": "#/components/schemas/V1CinderVolumeSource"
    },
    "configMap": {
     "$ref": "#/components/schemas/V1ConfigMapVolumeSource"
    },
    "csi": {
     "$ref": "#/components/schemas/V1CSIVolumeSource"
    },
    "downwardAPI": {
     "$ref": "#/components/schemas/V1DownwardAPIVolumeSource"
    },
    "emptyDir": {
     "$ref": "#/components/schemas/V1EmptyDirVolumeSource"
    },
    "ephemeral": {
     "$ref": "#/components/schemas/V1EphemeralVolumeSource"
    },
    "fc": {
     "$ref": "#/components/schemas/V1FCVolumeSource"
    },
    "flexVolume": {
     "$ref": "#/components/schemas/V1FlexVolumeSource"
    },
    "flocker": {
     "$ref": "#/components/schemas/V1FlockerVolumeSource"
    },
    "gcePersistentDisk": {
     "$ref": "#/components/schemas/V1GCEPersistentDiskVolumeSource"
    },
    "gitRepo": {
     "$ref": "#/components/schemas/V1GitRepoVolumeSource"
    },
    "glusterfs": {
     "$ref": "#/components/schemas/V1GlusterfsVolumeSource"
    },
    "hostPath": {
     "$ref": "#/components/schemas/V1HostPathVolumeSource"
    },
    "image": {
     "$ref": "#/components/schemas/V1ImageVolumeSource"
    },
    "iscsi": {
     "$ref": "#/components/schemas/V1ISCSIVolumeSource"
    },
    "name": {
     "type": "string"
    },
    "nfs": {
     "$ref": "#/components/schemas/V1NFSVolumeSource"
    },
    "persistentVolumeClaim": {
     "$ref": "#/components/schemas/V1PersistentVolumeClaimVolumeSource"
    },
    "photonPersistentDisk": {
     "$ref": "#/components/schemas/V1PhotonPersistentDiskVolumeSource"
    },
    "portworxVolume": {
     "$ref": "#/components/schemas/V1PortworxVolumeSource"
    },
    "projected": {
     "$ref": "#/components/schemas/V1ProjectedVolumeSource"
    },
    "quobyte": {
     "$ref": "#/components/schemas/V1QuobyteVolumeSource"
    },
    "rbd": {
     "$ref": "#/components/schemas/V1RBDVolumeSource"
    },
    "scaleIO": {
     "$ref": "#/components/schemas/V1ScaleIOVolumeSource"
    },
    "secret": {
     "$ref": "#/components/schemas/V1SecretVolumeSource"
    },
    "storageos": {
     "$ref": "#/components/schemas/V1StorageOSVolumeSource"
    },
    "vsphereVolume": {
     "$ref": "#/components/schemas/V1VsphereVirtualDiskVolumeSource"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V1VolumeDevice": {
   "properties": {
    "devicePath": {
     "type": "string"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "devicePath",
    "name"
   ],
   "type": "object"
  },
  "V1VolumeHealthCondition": {
   "properties": {
    "message": {
     "type": "string"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    }
   },
   "required": [
    "reason",
    "status"
   ],
   "type": "object"
  },
  "V1VolumeMount": {
   "properties": {
    "bindMountOptions": {
     "items": {
      "type": "string"
     },
     "type": "array"
    },
    "mountPath": {
     "type": "string"
    },
    "mountPropagation": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "recursiveReadOnly": {
     "type": "string"
    },
    "subPath": {
     "type": "string"
    },
    "subPathExpr": {
     "type": "string"
    }
   },
   "required": [
    "mountPath",
    "name"
   ],
   "type": "object"
  },
  "V1VolumeMountStatus": {
   "properties": {
    "mountPath": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "readOnly": {
     "type": "boolean"
    },
    "recursiveReadOnly": {
     "type": "string"
    },
    "volumeStatus": {
     "$ref": "#/components/schemas/V1VolumeStatus"
    }
   },
   "required": [
    "mountPath",
    "name"
   ],
   "type": "object"
  },
  "V1VolumeProjection": {
   "properties": {
    "clusterTrustBundle": {
     "$ref": "#/components/schemas/V1ClusterTrustBundleProjection"
    },
    "configMap": {
     "$ref": "#/components/schemas/V1ConfigMapProjection"
    },
    "downwardAPI": {
     "$ref": "#/components/schemas/V1DownwardAPIProjection"
    },
    "podCertificate": {
     "$ref": "#/components/schemas/V1PodCertificateProjection"
    },
    "secret": {
     "$ref": "#/components/schemas/V1SecretProjection"
    },
    "serviceAccountToken": {
     "$ref": "#/components/schemas/V1ServiceAccountTokenProjection"
    }
   },
   "type": "object"
  },
  "V1VolumeResourceRequirements": {
   "properties": {
    "limits": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    },
    "requests": {
     "additionalProperties": {
      "type": "string"
     },
     "type": "object"
    }
   },
   "type": "object"
  },
  "V1VolumeStatus": {
   "properties": {
    "image": {
     "$ref": "#/components/schemas/V1ImageVolumeStatus"
    }
   },
   "type": "object"
  },
  "V1VsphereVirtualDiskVolumeSource": {
   "properties": {
    "fsType": {
     "type": "string"
    },
    "storagePolicyID": {
     "type": "string"
    },
    "storagePolicyName": {
     "type": "string"
    },
    "volumePath": {
     "type": "string"
    }
   },
   "required": [
    "volumePath"
   ],
   "type": "object"
  },
  "V1WeightedPodAffinityTerm": {
   "properties": {
    "podAffinityTerm": {
     "$ref": "#/components/schemas/V1PodAffinityTerm"
    },
    "weight": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "podAffinityTerm",
    "weight"
   ],
   "type": "object"
  },
  "V1WindowsSecurityContextOptions": {
   "properties": {
    "gmsaCredentialSpec": {
     "type": "string"
    },
    "gmsaCredentialSpecName": {
     "type": "string"
    },
    "hostProcess": {
     "type": "boolean"
    },
    "runAsUserName": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V2ContainerResourceMetricSource": {
   "properties": {
    "container": {
     "type": "string"
    },
    "name": {
     "type": "string"
    },
    "target": {
     "$ref": "#/components/schemas/V2MetricTarget"
    }
   },
   "required": [
    "container",
    "name",
    "target"
   ],
   "type": "object"
  },
  "V2ContainerResourceMetricStatus": {
   "properties": {
    "container": {
     "type": "string"
    },
    "current": {
     "$ref": "#/components/schemas/V2MetricValueStatus"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "container",
    "current",
    "name"
   ],
   "type": "object"
  },
  "V2CrossVersionObjectReference": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "kind",
    "name"
   ],
   "type": "object"
  },
  "V2ExternalMetricSource": {
   "properties": {
    "metric": {
     "$ref": "#/components/schemas/V2MetricIdentifier"
    },
    "target": {
     "$ref": "#/components/schemas/V2MetricTarget"
    }
   },
   "required": [
    "metric",
    "target"
   ],
   "type": "object"
  },
  "V2ExternalMetricStatus": {
   "properties": {
    "current": {
     "$ref": "#/components/schemas/V2MetricValueStatus"
    },
    "metric": {
     "$ref": "#/components/schemas/V2MetricIdentifier"
    }
   },
   "required": [
    "current",
    "metric"
   ],
   "type": "object"
  },
  "V2HPAScalingPolicy": {
   "properties": {
    "periodSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "type": {
     "type": "string"
    },
    "value": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "periodSeconds",
    "type",
    "value"
   ],
   "type": "object"
  },
  "V2HPAScalingRules": {
   "properties": {
    "policies": {
     "items": {
      "$ref": "#/components/schemas/V2HPAScalingPolicy"
     },
     "type": "array"
    },
    "selectPolicy": {
     "type": "string"
    },
    "stabilizationWindowSeconds": {
     "format": "int64",
     "type": "integer"
    },
    "tolerance": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V2HorizontalPodAutoscaler": {
   "properties": {
    "apiVersion": {
     "type": "string"
    },
    "kind": {
     "type": "string"
    },
    "metadata": {
     "$ref": "#/components/schemas/V1ObjectMeta"
    },
    "spec": {
     "$ref": "#/components/schemas/V2HorizontalPodAutoscalerSpec"
    },
    "status": {
     "$ref": "#/components/schemas/V2HorizontalPodAutoscalerStatus"
    }
   },
   "required": [
    "spec"
   ],
   "type": "object"
  },
  "V2HorizontalPodAutoscalerBehavior": {
   "properties": {
    "scaleDown": {
     "$ref": "#/components/schemas/V2HPAScalingRules"
    },
    "scaleUp": {
     "$ref": "#/components/schemas/V2HPAScalingRules"
    }
   },
   "type": "object"
  },
  "V2HorizontalPodAutoscalerCondition": {
   "properties": {
    "lastTransitionTime": {
     "format": "date-time",
     "type": "string"
    },
    "message": {
     "type": "string"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    },
    "reason": {
     "type": "string"
    },
    "status": {
     "type": "string"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "status",
    "type"
   ],
   "type": "object"
  },
  "V2HorizontalPodAutoscalerSpec": {
   "properties": {
    "behavior": {
     "$ref": "#/components/schemas/V2HorizontalPodAutoscalerBehavior"
    },
    "maxReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "metrics": {
     "items": {
      "$ref": "#/components/schemas/V2MetricSpec"
     },
     "type": "array"
    },
    "minReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "scaleTargetRef": {
     "$ref": "#/components/schemas/V2CrossVersionObjectReference"
    }
   },
   "required": [
    "maxReplicas",
    "scaleTargetRef"
   ],
   "type": "object"
  },
  "V2HorizontalPodAutoscalerStatus": {
   "properties": {
    "conditions": {
     "items": {
      "$ref": "#/components/schemas/V2HorizontalPodAutoscalerCondition"
     },
     "type": "array"
    },
    "currentMetrics": {
     "items": {
      "$ref": "#/components/schemas/V2MetricStatus"
     },
     "type": "array"
    },
    "currentReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "desiredReplicas": {
     "format": "int64",
     "type": "integer"
    },
    "lastScaleTime": {
     "format": "date-time",
     "type": "string"
    },
    "observedGeneration": {
     "format": "int64",
     "type": "integer"
    }
   },
   "required": [
    "desiredReplicas"
   ],
   "type": "object"
  },
  "V2MetricIdentifier": {
   "properties": {
    "name": {
     "type": "string"
    },
    "selector": {
     "$ref": "#/components/schemas/V1LabelSelector"
    }
   },
   "required": [
    "name"
   ],
   "type": "object"
  },
  "V2MetricSpec": {
   "properties": {
    "containerResource": {
     "$ref": "#/components/schemas/V2ContainerResourceMetricSource"
    },
    "external": {
     "$ref": "#/components/schemas/V2ExternalMetricSource"
    },
    "object": {
     "$ref": "#/components/schemas/V2ObjectMetricSource"
    },
    "pods": {
     "$ref": "#/components/schemas/V2PodsMetricSource"
    },
    "resource": {
     "$ref": "#/components/schemas/V2ResourceMetricSource"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "type"
   ],
   "type": "object"
  },
  "V2MetricStatus": {
   "properties": {
    "containerResource": {
     "$ref": "#/components/schemas/V2ContainerResourceMetricStatus"
    },
    "external": {
     "$ref": "#/components/schemas/V2ExternalMetricStatus"
    },
    "object": {
     "$ref": "#/components/schemas/V2ObjectMetricStatus"
    },
    "pods": {
     "$ref": "#/components/schemas/V2PodsMetricStatus"
    },
    "resource": {
     "$ref": "#/components/schemas/V2ResourceMetricStatus"
    },
    "type": {
     "type": "string"
    }
   },
   "required": [
    "type"
   ],
   "type": "object"
  },
  "V2MetricTarget": {
   "properties": {
    "averageUtilization": {
     "format": "int64",
     "type": "integer"
    },
    "averageValue": {
     "type": "string"
    },
    "type": {
     "type": "string"
    },
    "value": {
     "type": "string"
    }
   },
   "required": [
    "type"
   ],
   "type": "object"
  },
  "V2MetricValueStatus": {
   "properties": {
    "averageUtilization": {
     "format": "int64",
     "type": "integer"
    },
    "averageValue": {
     "type": "string"
    },
    "value": {
     "type": "string"
    }
   },
   "type": "object"
  },
  "V2ObjectMetricSource": {
   "properties": {
    "describedObject": {
     "$ref": "#/components/schemas/V2CrossVersionObjectReference"
    },
    "metric": {
     "$ref": "#/components/schemas/V2MetricIdentifier"
    },
    "target": {
     "$ref": "#/components/schemas/V2MetricTarget"
    }
   },
   "required": [
    "describedObject",
    "metric",
    "target"
   ],
   "type": "object"
  },
  "V2ObjectMetricStatus": {
   "properties": {
    "current": {
     "$ref": "#/components/schemas/V2MetricValueStatus"
    },
    "describedObject": {
     "$ref": "#/components/schemas/V2CrossVersionObjectReference"
    },
    "metric": {
     "$ref": "#/components/schemas/V2MetricIdentifier"
    }
   },
   "required": [
    "current",
    "describedObject",
    "metric"
   ],
   "type": "object"
  },
  "V2PodsMetricSource": {
   "properties": {
    "metric": {
     "$ref": "#/components/schemas/V2MetricIdentifier"
    },
    "target": {
     "$ref": "#/components/schemas/V2MetricTarget"
    }
   },
   "required": [
    "metric",
    "target"
   ],
   "type": "object"
  },
  "V2PodsMetricStatus": {
   "properties": {
    "current": {
     "$ref": "#/components/schemas/V2MetricValueStatus"
    },
    "metric": {
     "$ref": "#/components/schemas/V2MetricIdentifier"
    }
   },
   "required": [
    "current",
    "metric"
   ],
   "type": "object"
  },
  "V2ResourceMetricSource": {
   "properties": {
    "name": {
     "type": "string"
    },
    "target": {
     "$ref": "#/components/schemas/V2MetricTarget"
    }
   },
   "required": [
    "name",
    "target"
   ],
   "type": "object"
  },
  "V2ResourceMetricStatus": {
   "properties": {
    "current": {
     "$ref": "#/components/schemas/V2MetricValueStatus"
    },
    "name": {
     "type": "string"
    }
   },
   "required": [
    "current",
    "name"
   ],
   "type": "object"
  }
 }
}
"""

_PARSED: dict[str, Any] = json.loads(_DOCUMENT)
KIND_MODELS: dict[str, str] = _PARSED["kinds"]
SCHEMAS: dict[str, Any] = _PARSED["schemas"]
