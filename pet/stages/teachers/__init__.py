"""Stage A: train the teachers (one masked LM per pattern x verbalizer x seed; iPET generations). Entry: stage.train_teachers."""
