"""Members: enrolment, identifiers, progressive profile."""
