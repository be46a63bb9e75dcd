"""The clients: the owner's app and the agency client. They depend on the core only."""
