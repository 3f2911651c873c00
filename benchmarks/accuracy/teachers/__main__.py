from benchmarks.accuracy.teachers.build import main

main()
