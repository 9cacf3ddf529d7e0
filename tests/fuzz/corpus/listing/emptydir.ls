{"version":1,"root":{"type":"directory","entries":{}}}
