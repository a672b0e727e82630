"""What a study stored, and what it says: the results store, summaries over trials, claims and the
critical batch size."""
