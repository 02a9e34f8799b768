"""Roles, permissions and who may do what where."""
