"""Payment gateways behind one interface: card (Stripe), account credit, manual payment."""
