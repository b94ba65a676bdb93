"""Publishing journals to ERPs: clients, adapters and provisioning of the reference ERP."""
