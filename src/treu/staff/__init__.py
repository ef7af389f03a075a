"""Staff accounts of the admin console: roles, passwords (argon2), optional TOTP."""
