"""CRI v1: the RuntimeService and ImageService that hawserd serves, one module per method group."""
