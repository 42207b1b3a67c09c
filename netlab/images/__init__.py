"""Programs the lab runs as container images (`netlab/echo` -> `netlab.images.echo`)."""
