"""What the gateway and the tenant backends must agree on, written once."""
