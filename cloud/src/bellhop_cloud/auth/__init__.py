"""Signing keys, access tokens and opaque refresh/enrolment tokens."""
