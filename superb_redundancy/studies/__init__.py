"""Ready study files (installed as superb_redundancy.studies; data only): `superb-redundancy study run FILE`."""
