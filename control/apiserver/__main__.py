from control.apiserver.cli import COMMAND
from control.cli_support import main_for

raise SystemExit(main_for(COMMAND))
