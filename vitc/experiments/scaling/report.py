def write_report(name, res, d, bootstrap=1000):
    raise NotImplementedError("report not written yet")
