"""Logic that the JSON API and the web pages share (torch-free): neither imports the other."""
