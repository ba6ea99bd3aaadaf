from seaway_serving.router.main import main

main()
