"""The PyFlink adapters: Flink's calling conventions (Table API functions in ``table``,
DataStream functions in ``datastream``) translated into the session contract."""
