"""What the gateway and the tenant backends must agree on."""
