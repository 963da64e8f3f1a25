"""``python -m rnnbook build ...``"""
import sys

from rnnbook.book.cli import main

sys.exit(main())
