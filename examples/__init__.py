"""Example apps that use mailreset (not part of the library; they may import web frameworks)."""
