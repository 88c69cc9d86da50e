"""Stage B: score the unlabeled set with every teacher and write the ensemble's soft labels. Entry: stage.label."""
