"""What is read and written: the run config, YAML files, data files, artifacts and manifests."""
