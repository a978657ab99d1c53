"""`python -m upload_service.cli`: the `upload-service` command."""

import sys

from upload_service.cli.command import main

sys.exit(main())
