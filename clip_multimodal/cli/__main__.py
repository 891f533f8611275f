"""`python -m clip_multimodal.cli`, the same as the `clip-multimodal` command."""

from clip_multimodal.cli import main

raise SystemExit(main())
