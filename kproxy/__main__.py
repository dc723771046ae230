from control.cli_support import main_for
from kproxy.cli import COMMAND

raise SystemExit(main_for(COMMAND))
