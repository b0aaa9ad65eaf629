"""The live bot: the file handshake, its reports and their field maps (docs/live-bot.md)."""
