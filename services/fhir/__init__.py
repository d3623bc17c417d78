"""FHIR R4 knowledge shared by the services: validation, OperationOutcomes, patient compartments."""
