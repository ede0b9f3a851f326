"""The doors people use: the browser chat, the terminal, exports, uploads and the HTTP client."""
