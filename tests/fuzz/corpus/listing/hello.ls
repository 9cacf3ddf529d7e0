{"version":1,"root":{"type":"regular","size":6,"narOffset":96}}
