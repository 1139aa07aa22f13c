"""The wire to the low-level VLA: protocol, ZMQ server harness and client, action chunking, openpi backend."""

from policy_client.action_chunker import ActionChunker, ChunkingConfig
from policy_client.base_policy import BasePolicy
from policy_client.connect import BadAddress, connect, parse_address
from policy_client.errors import PolicyError, PolicyServerError, PolicyTimeout, PolicyUnreachable, ProtocolMismatch
from policy_client.server import PolicyServer, ServerConfig, serve

__all__ = [
    "ActionChunker", "BadAddress", "BasePolicy", "ChunkingConfig", "PolicyError", "PolicyServer",
    "PolicyServerError", "PolicyTimeout", "PolicyUnreachable", "ProtocolMismatch", "ServerConfig",
    "connect", "parse_address", "serve",
]
