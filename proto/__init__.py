"""The contract shared by chatd, restd, workers and clients: event names, error codes,
wire models and codecs. Imports nothing from the services (STYLE 1). See PROTOCOL.md."""
