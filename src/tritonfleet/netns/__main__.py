import sys

from tritonfleet.netns.command import main

sys.exit(main())
