"""chatd: the realtime websocket daemon."""
