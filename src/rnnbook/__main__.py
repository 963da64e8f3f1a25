"""``python -m rnnbook build ...``"""
import sys

from rnnbook.cli import main

sys.exit(main())
