{"version":1,"root":{"type":"symlink","target":"target"}}
