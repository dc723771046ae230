from control.cli_support import main_for
from kubelet.cli import COMMAND

raise SystemExit(main_for(COMMAND))
