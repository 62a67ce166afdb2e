"""bookd: books from an SQS FIFO queue to S3, announced on a second FIFO queue."""
