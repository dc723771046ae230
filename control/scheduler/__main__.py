from control.cli_support import main_for
from control.scheduler.cli import COMMAND

raise SystemExit(main_for(COMMAND))
