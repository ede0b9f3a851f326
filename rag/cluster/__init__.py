"""Ray: builds on a cluster and answering replicas (the optional `rag[ray]` extra)."""
