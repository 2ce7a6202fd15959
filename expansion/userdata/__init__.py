"""A researcher's own data (`.npz` arrays, image folders and their archives): read, checked and
summarized for the spec, torch-free (numpy and Pillow only)."""
