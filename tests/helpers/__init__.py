"""Code the tests share: ports and waits, template databases, the e2e stack."""
