from control.cli_support import main_for
from control.controllers.cli import COMMAND

raise SystemExit(main_for(COMMAND))
