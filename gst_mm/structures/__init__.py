from .counting_data_sample import CountingDataSample

__all__ = ['CountingDataSample']
