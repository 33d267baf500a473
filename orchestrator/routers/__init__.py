"""Routers: one interface (``api.Router``) and its drivers (``frr``, ``netns``, ``fake``)."""
