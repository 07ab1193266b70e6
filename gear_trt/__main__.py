import sys

from gear_trt.cli.main import main

sys.exit(main())
