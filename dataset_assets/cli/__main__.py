from dataset_assets.cli import main

main()
