"""The error tree: every message names what is at fault and what to do next."""


class RagError(Exception):
    """Base class for every error the library raises on purpose."""


class ConfigError(RagError):
    """A setting, flag or environment variable has an unusable value."""


class CorpusError(RagError):
    """The corpus folder is missing or holds nothing that can be indexed."""


class ModelError(RagError):
    """The embedding model cannot be found or loaded."""


class IndexMissing(RagError):
    """No index has been built yet in the index folder."""


class IndexMismatch(RagError):
    """The index was built with settings that differ from the ones asked for."""


class IndexDamaged(RagError):
    """Index files are missing, truncated or out of step with each other."""


class BuildLocked(RagError):
    """Another build holds the index lock."""


class UploadRefused(RagError):
    """An uploaded or deleted document was refused; the message says why."""


class ClusterError(RagError):
    """The Ray cluster cannot be reached, lacks what `rag` needs on its nodes, or lost the work."""
