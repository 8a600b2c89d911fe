"""``python -m hawser.daemon``: hawserd."""

from hawser.daemon import main

raise SystemExit(main())
