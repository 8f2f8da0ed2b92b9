"""Real-time avatars (issue 26): a video prepared once (avatar.py), then live sessions that lip-sync it to audio
as it arrives. MuseTalk only: LatentSync's diffusion is far too slow for real time.

This package's ``__init__`` imports the avatar module alone: the graph's SaveMuseTalkAvatar node reaches it, and
must not pull in the server's network libraries; import ``musetalk_core.realtime.session`` / ``.server`` by name.
"""

from .avatar import (AVATAR_FORMAT, Avatar, AvatarFrames, avatar_path, check_models, check_name,
                     default_avatars_dir, list_avatars, load_avatar, prepare_avatar, save_avatar, set_avatars_dir)

__all__ = ["AVATAR_FORMAT", "Avatar", "AvatarFrames", "avatar_path", "check_models", "check_name",
           "default_avatars_dir", "list_avatars", "load_avatar", "prepare_avatar", "save_avatar", "set_avatars_dir"]
