// AxonClient module.
