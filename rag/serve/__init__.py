"""The doors people use: the browser chat, the OpenAI-compatible endpoint and MCP, the terminal, exports,
uploads, and a shared server's accounts, log-in and audit log."""
