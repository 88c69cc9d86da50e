"""Stage C: distil the soft labels into a plain sequence classifier. Entry: stage.distill."""
