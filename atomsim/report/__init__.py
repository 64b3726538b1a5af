"""Reports, sweeps and device projection (issue 7; the energy estimate is atomsim.schema.energy).
Submodules import lazily:

    atomsim.report.memory_report  memory_rows(...), write_memory_report(rows, out_dir)
    atomsim.report.study          load_study(path), Study
    atomsim.report.sweep          run_sweep(study, out_dir, workers=..., dask=...)
    atomsim.report.sweep_plots    plot_all(study, rows, out_dir): the three sweep plots
    atomsim.report.project        project_profile(profile, to_device, method), register_project(subparsers)
    atomsim.report.timeline       (trace timelines; another part)
"""
