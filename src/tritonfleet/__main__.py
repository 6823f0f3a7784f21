import sys

from tritonfleet.cli import main

sys.exit(main())
